// Package chatbot holds what the chat robot sinks (dingtalk-sink,
// feishu-sink) share: the fields of both robot modes (a custom robot's
// webhook, an app's robot) and their checks, message templates over an
// event (internal/eventtmpl), a sliding-window rate limiter per robot that
// makes a batch wait instead of fail, an access token cached, refreshed
// before it expires and replaced once when the vendor refuses it, the HTTP
// client settings, and the delivery loop of one batch (Sink.Put) that turns
// each vendor's answers into the classes of bridge/outcome.go. What differs
// by vendor (message shapes, signing, answer codes, where a webhook holds
// its token) stays in the vendor's package.
//
// A connector instance holds one Sink, shared by all its tasks, so the rate
// limit and the access token are per robot, not per task; a task that fails
// and is restarted keeps them.
package chatbot
