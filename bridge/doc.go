// Package bridge is what happens to an event between an endpoint and the
// mesh: validation and publishing (Bridge.Publish), push subscriptions in the
// shape of the CloudEvents Subscriptions API with their filters
// (CompileFilters), and the delivery loops that send events to sinks with
// retries (Backoff), de-duplication and dead-lettering.
//
// The sql filter dialect (CESQL) is compiled in with the build tag cesql
// until go.sum lists github.com/antlr/antlr4/runtime/Go/antlr, which the
// CESQL parser needs; see filter_nosql.go.
package bridge
