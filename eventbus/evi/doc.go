// Package evi is the event interface of sipasync, after OpenSIPS's EVI:
// named events with an ordered list of attributes, raised by code
// (RaiseEvent) and delivered to subscribers named by a socket
// (SubscribeEvent), whose scheme picks a transport.
//
//	ev := evi.New(bus)
//	_ = ev.Declare("E_SIP_MESSAGE")
//	_, err := ev.SubscribeEvent("E_SIP_MESSAGE", "udp:127.0.0.1:8888")
//	...
//	_ = ev.RaiseEvent("E_SIP_MESSAGE", evi.String("user", user), evi.String("msg", body))
//
// Events must be declared before they are raised or subscribed to; an
// undeclared event, an unknown scheme or a malformed socket is an error, so
// that --event NAME=SOCKET flags (ParseEventFlag, SubscribeFlags) fail at
// start-up.
//
// Transports: "udp:host:port" sends each event as one datagram in the event
// grammar; "local:NAME" calls a Go function registered with HandleLocal.
// Other transports (RabbitMQ) implement Transport and register a Factory for
// their scheme with RegisterTransport; they reuse Encode, through
// Event.Bytes, for a byte-exact wire format.
//
// Raised events are published on the event bus (package eventbus): on the
// event's topic, TopicPrefix+name, forwarded to AllTopicName, as messages of
// EventType. Each socket subscription is a bus subscription with its own
// bounded queue and goroutine: RaiseEvent never waits for a transport, a
// slow transport drops (and counts) its own events only, and each transport
// receives events in the order they were raised, one Send at a time.
//
// Events larger than the maximum size (DefaultMaxSize, 16,384 bytes, once
// encoded) are refused with ErrEventTooLarge and counted, never truncated.
// Sockets never show passwords: Socket's String, GoString and LogValue and
// every error of this package redact "user:password@" to "user:xxxxx@".
package evi
