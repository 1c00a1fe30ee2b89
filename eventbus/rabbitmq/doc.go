// Package rabbitmq is the RabbitMQ transport of sipasync's event interface
// (package evi), after OpenSIPS's event_rabbitmq, on amqp091-go.
//
//	_ = rabbitmq.Register(a.Events, rabbitmq.DefaultOptions())
//	// --event 'E_SIP_MESSAGE=rabbitmq:guest:guest@127.0.0.1:5672/sip_messages'
//	_, err := a.Events.SubscribeEvent("E_SIP_MESSAGE", "rabbitmq:127.0.0.1/sip_messages;sync=1")
//
// Socket syntax (see Address):
//
//	rabbitmq:[user[:password]@]host[:port]/[exchange?]routing_key[;name=value]...
//	rabbitmqs:...   TLS, default port 5671
//
// with the parameters vhost, heartbeat, sync (or sync_mode), format,
// persistent and buffer.
// The message body is the event grammar, byte for byte evi.Encode, or with
// format=json a JSON-RPC notification; content type, message id (unique per
// event, kept when republished), timestamp, type (the event name) and app id
// "sipasync" are set. sipasync never declares queues, exchanges or bindings:
// an exchange that does not exist is a connection error (retried), and a
// message no queue takes is returned by the broker (mandatory), counted and
// logged.
//
// Delivery: every socket holds a bounded buffer and one goroutine that owns
// the connection and publishes in confirm mode. When the connection is lost
// it reconnects with bounded exponential backoff (each attempt bounded by
// ConnectTimeout) and publishes again, first, the messages it had published
// and not seen confirmed. So every event accepted is delivered at least once,
// not exactly once: a message whose confirm was lost with the connection
// reaches the queue twice, both copies with the same message id, so a
// consumer that dedupes on the message id sees each event exactly once
// (TestLostConfirmsRepublishedWithSameID forces this case; TestSyncRestart10k
// checks it across a broker restart). An event that is not delivered is
// counted: Dropped (async: the
// buffer was full, the broker nacked it, or it was still held at Close),
// Returned (unroutable), TooLarge, or an error to the raiser (sync). A
// confirm means the broker has the message; only a persistent message
// (persistent=1) in a durable queue survives a broker restart.
//
// In async mode (sync_mode=0, the default) evi's RaiseEvent returns at once;
// Send only appends to the buffer, so a slow or dead broker never holds up
// SIP processing: what does not fit is dropped and counted. In sync mode
// (sync_mode=1) RaiseEvent waits for the confirm, at most evi's send
// timeout, and returns the transport's error.
//
// amqp091-go has a recovery API (Config.Recovery) since v1.12; this package
// does not use it: it retries a fixed number of times at a fixed interval and
// then gives the connection up, and it resets the publisher-confirm sequence
// on recovery, dropping the confirms still pending, which is exactly what
// retry-after-reconnect needs to know. The package's own NotifyClose loop
// retries for ever with bounded exponential backoff and republishes what is
// unconfirmed.
//
// Passwords never appear in logs, errors or Stats: sockets are shown with
// the password replaced by "xxxxx", and Address, Transport and Factory print
// (fmt, slog) in that form.
package rabbitmq
