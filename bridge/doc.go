// Package bridge is what happens to an event between the outside world and
// the mesh, written once for every part that meets it:
//
//   - validation (Validate, ValidateExtensionName) and publishing
//     (Bridge.Publish), with one error type naming the attribute;
//   - push subscriptions in the shape of the CloudEvents Subscriptions API
//     and their filters (CompileFilters: exact, prefix, suffix, all, any,
//     not and CESQL);
//   - the one delivery loop (Loop) that subscriptions, sink connectors,
//     MQTT outbound and WebSocket subscribers are handlers of, and the one
//     classification of failed deliveries (Classify: retry, permanent,
//     unavailable) it settles them by, with Backoff and DeadLetter;
//   - tracing of publishes and deliveries, and {attribute} templates.
//
// Packages under it hold what endpoints and connectors share without
// importing each other: cehttp (the CloudEvents-over-HTTP codec and
// client), problem (the table of errors that cross the wire), apitoken,
// tlsconf.
package bridge
