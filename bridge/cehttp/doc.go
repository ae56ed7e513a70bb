// Package cehttp is meshd's one codec of CloudEvents over HTTP, shared by
// every part that meets HTTP: the app API (protocols/httpapi), WebSocket
// publishing, webhook sources (http-source and the vendor webhooks),
// http-sink and subscription push delivery.
//
// Reading: ReadBody reads a request body within a limit (Content-Encoding
// identity or gzip), Parser.Parse turns it into events — binary mode by
// hand on the hot path; structured and batch mode in one scan for the
// usual shape of an event, with the SDK's JSON format for the rest, and
// diagnostics that name the attribute at fault — and Wrap turns a body
// that is not a CloudEvent into one. WebSocket messages use the Parser's
// ParseStructured and ParseBatch.
//
// Writing: WriteBinary and EncodeStructured encode an event for a request;
// Client sends events and classifies each answer once (ok, retry after,
// permanent, target unavailable: see bridge.Classify), with one
// Retry-After parser and one cap. Redirects are never followed: a POST
// would turn into a GET.
package cehttp
