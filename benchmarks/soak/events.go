package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consumer declares one queue per node and counts what arrives in each:
// messages, by event name (the first line of the grammar body), and
// message ids seen more than once (delivery is at least once).
type consumer struct {
	conn *amqp.Connection
	ch   *amqp.Channel
	wg   sync.WaitGroup

	mu     sync.Mutex
	queues map[string]*queueCount // by node
}

type queueCount struct {
	name     string
	received atomic.Int64
	byEvent  map[string]int64 // under consumer.mu
	ids      map[string]struct{}
	dups     int64
	noID     int64
}

// newConsumer connects to the broker at url and declares, for each node, a
// non-durable auto-delete queue named prefix+"."+node, then starts
// consuming it (auto-ack). The queues go away with the connection.
func newConsumer(ctx context.Context, url, prefix string, nodes []string) (*consumer, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq: channel: %w", err)
	}
	c := &consumer{conn: conn, ch: ch, queues: map[string]*queueCount{}}
	for _, node := range nodes {
		q := &queueCount{name: prefix + "." + node, byEvent: map[string]int64{}, ids: map[string]struct{}{}}
		if _, err := ch.QueueDeclare(q.name, false, true, false, false, nil); err != nil {
			c.Close()
			return nil, fmt.Errorf("rabbitmq: declare %s: %w", q.name, err)
		}
		d, err := ch.ConsumeWithContext(ctx, q.name, "soak-"+node, true, false, false, false, nil)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("rabbitmq: consume %s: %w", q.name, err)
		}
		c.queues[node] = q
		c.wg.Add(1)
		go c.count(q, d)
	}
	return c, nil
}

func (c *consumer) count(q *queueCount, d <-chan amqp.Delivery) {
	defer c.wg.Done()
	for m := range d {
		name, _, _ := bytes.Cut(m.Body, []byte("\n"))
		c.mu.Lock()
		q.byEvent[string(name)]++
		if m.MessageId == "" {
			q.noID++
		} else if _, seen := q.ids[m.MessageId]; seen {
			q.dups++
		} else {
			q.ids[m.MessageId] = struct{}{}
		}
		c.mu.Unlock()
		q.received.Add(1)
	}
}

// Received returns how many messages arrived in node's queue so far.
func (c *consumer) Received(node string) int64 {
	if q := c.queues[node]; q != nil {
		return q.received.Load()
	}
	return 0
}

// QueueName returns node's queue.
func (c *consumer) QueueName(node string) string { return c.queues[node].name }

// EventTotals is what one node's queue received.
type EventTotals struct {
	Queue    string           `json:"queue"`
	Received int64            `json:"received"`
	ByEvent  map[string]int64 `json:"by_event"`
	// Duplicates are messages whose id had been seen before (a publish
	// repeated after a lost confirm).
	Duplicates int64 `json:"duplicates"`
	NoID       int64 `json:"no_message_id,omitempty"`
	// Sent is what the node's transport subscribers sent
	// (sipasync_events_sent_total), Confirmed what the broker confirmed,
	// Raised what routes raised; read from /metrics at the end.
	Raised    float64 `json:"raised"`
	Sent      float64 `json:"sent"`
	Published float64 `json:"published"`
	Confirmed float64 `json:"confirmed"`
	// Lost is Confirmed minus the distinct messages received.
	Lost float64 `json:"lost"`
}

// Totals returns node's counts so far.
func (c *consumer) Totals(node string) EventTotals {
	q := c.queues[node]
	if q == nil {
		return EventTotals{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := EventTotals{Queue: q.name, Received: q.received.Load(), ByEvent: map[string]int64{}, Duplicates: q.dups, NoID: q.noID}
	for k, v := range q.byEvent {
		t.ByEvent[k] = v
	}
	return t
}

// Close deletes the queues and closes the connection, then waits for the
// counting goroutines.
func (c *consumer) Close() {
	for _, q := range c.queues {
		_, _ = c.ch.QueueDelete(q.name, false, false, false)
	}
	_ = c.ch.Close()
	_ = c.conn.Close()
	c.wg.Wait()
}
