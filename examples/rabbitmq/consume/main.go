// Command consume declares a durable queue on RabbitMQ and prints every
// message that arrives in it: the other end of examples/rabbitmq (sipasync
// never declares queues).
//
//	go run ./examples/rabbitmq/consume --queue sipmsg
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	url := flag.String("url", "amqp://guest:guest@127.0.0.1:5672/", "broker URL (amqp://user:pass@host:port/vhost)")
	queue := flag.String("queue", "sipmsg", "queue to declare (durable) and read")
	flag.Parse()
	if err := run(*url, *queue); err != nil {
		fmt.Fprintln(os.Stderr, "consume:", err)
		os.Exit(1)
	}
}

func run(url, queue string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return err
	}
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "consume: waiting on queue %q (Ctrl-C to stop)\n", queue)
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return fmt.Errorf("the broker closed the channel")
			}
			fmt.Printf("--- %s %s id=%s\n%s", d.Type, d.ContentType, d.MessageId, d.Body)
			if len(d.Body) > 0 && d.Body[len(d.Body)-1] != '\n' {
				fmt.Println()
			}
		}
	}
}
