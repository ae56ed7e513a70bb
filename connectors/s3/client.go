package s3

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/meshd/meshd/bridge"
	"github.com/meshd/meshd/connectors"
)

// newClient makes the S3 client of a config: static keys when given,
// otherwise the AWS default credential chain. hc, if not nil, sends the
// requests (tests inject failures with it).
func newClient(ctx context.Context, cfg connectors.Config, hc aws.HTTPClient) (*s3.Client, error) {
	region := cfg.String(FieldRegion)
	endpoint := cfg.String(FieldEndpoint)
	pathStyle := cfg.Bool(FieldPathStyle)
	adjust := func(o *s3.Options) {
		o.Region = region
		o.UsePathStyle = pathStyle
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		if hc != nil {
			o.HTTPClient = hc
		}
	}
	if key := cfg.String(FieldAccessKey); key != "" {
		creds := aws.Credentials{AccessKeyID: key, SecretAccessKey: cfg.String(FieldSecretKey), SessionToken: cfg.String(FieldSessionToken), Source: "meshd config"}
		o := s3.Options{Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })}
		adjust(&o)
		return s3.New(o), nil
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("loading the AWS default credential chain: %w", err)
	}
	return s3.NewFromConfig(ac, adjust), nil
}

// apiCode returns the S3 error code of err ("" if it has none).
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus returns the HTTP status of a failed request (0 if none).
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func isNotFound(err error) bool {
	switch apiCode(err) {
	case "NotFound", "NoSuchKey":
		return true
	}
	return httpStatus(err) == 404 && apiCode(err) != "NoSuchBucket"
}

func isPreconditionFailed(err error) bool {
	return apiCode(err) == "PreconditionFailed" || httpStatus(err) == 412
}

// classify marks an S3 failure for the runtime: a request S3 refuses for
// what it holds (a key too long, an argument out of range) is retried and
// dead-lettered in the end; anything else — the server down or throttling,
// credentials refused, the bucket missing — means the bucket takes no
// object now, so the batch is held and retried.
func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	switch apiCode(err) {
	case "InvalidArgument", "KeyTooLongError", "EntityTooLarge", "InvalidRequest", "MetadataTooLarge":
		return err
	}
	return bridge.UnavailableError(err, 0)
}
