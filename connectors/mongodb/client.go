package mongodb

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/meshd/meshd/connectors"
)

// errBadData marks an event whose data is not a JSON object.
var errBadData = errors.New("event data is not a JSON object")

// connect opens a client on cfg's URI and pings the server. Errors never
// repeat the URI (it may carry a password).
func connect(ctx context.Context, cfg connectors.Config) (*mongo.Client, *mongo.Collection, error) {
	timeout := cfg.Duration(FieldTimeout)
	opts := options.Client().ApplyURI(cfg.String(FieldURI)).
		SetTimeout(timeout).
		SetServerSelectionTimeout(timeout).
		SetConnectTimeout(timeout).
		SetAppName("meshd")
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to MongoDB: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := client.Ping(pctx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, nil, fmt.Errorf("pinging MongoDB: %w", err)
	}
	coll := client.Database(cfg.String(FieldDatabase)).Collection(cfg.String(FieldCollection))
	return client, coll, nil
}

// disconnect closes client (nil is fine).
func disconnect(ctx context.Context, client *mongo.Client) error {
	if client == nil {
		return nil
	}
	if err := client.Disconnect(ctx); err != nil && !errors.Is(err, mongo.ErrClientDisconnected) {
		return fmt.Errorf("disconnecting from MongoDB: %w", err)
	}
	return nil
}
