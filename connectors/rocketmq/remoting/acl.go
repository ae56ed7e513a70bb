package remoting

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // RocketMQ's ACL 1.0 signs with HMAC-SHA1.
	"encoding/base64"
	"maps"
	"slices"
)

// Ext field names of RocketMQ's ACL (AclClientRPCHook, PlainAccessValidator).
const (
	FieldAccessKey     = "AccessKey"
	FieldSignature     = "Signature"
	FieldSecurityToken = "SecurityToken"
	// fieldUniqueKeyQuery is left out of the signature by the broker.
	fieldUniqueKeyQuery = "_UNIQUE_KEY_QUERY"
)

// Signature is the ACL signature of a request: HMAC-SHA1 keyed with the
// secret key over the values of its ext fields in key order (AccessKey
// included; Signature and _UNIQUE_KEY_QUERY left out), followed by the
// body, in base64.
func Signature(ext map[string]string, body []byte, secretKey string) string {
	mac := hmac.New(sha1.New, []byte(secretKey))
	for _, k := range slices.Sorted(maps.Keys(ext)) {
		if k == FieldSignature || k == fieldUniqueKeyQuery {
			continue
		}
		mac.Write([]byte(ext[k]))
	}
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Sign adds AccessKey and Signature to c's ext fields.
func Sign(c *Command, accessKey, secretKey string) {
	if c.ExtFields == nil {
		c.ExtFields = map[string]string{}
	}
	c.ExtFields[FieldAccessKey] = accessKey
	c.ExtFields[FieldSignature] = Signature(c.ExtFields, c.Body, secretKey)
}

// Verify reports whether c carries a valid signature by the secret key.
func Verify(c *Command, secretKey string) bool {
	got := c.ExtFields[FieldSignature]
	want := Signature(c.ExtFields, c.Body, secretKey)
	return hmac.Equal([]byte(got), []byte(want))
}
