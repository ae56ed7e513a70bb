// Package chatbot holds what the chat robot sinks (dingtalk-sink,
// feishu-sink) share: message templates over an event, a sliding-window
// rate limiter per robot that makes a batch wait instead of fail, an access
// token cached and refreshed before it expires, the HTTP client settings,
// and the delivery loop of one batch (Sink.Put) that turns each vendor's
// answers into the classes of bridge/outcome.go.
//
// A connector instance holds one Sink, shared by all its tasks, so the rate
// limit and the access token are per robot, not per task; a task that fails
// and is restarted keeps them.
package chatbot
