package workergroups_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/sipasync/sipasync/workergroups"
)

func Example() {
	// --async-workers 2 --async-workers-group "name=abc;workers=4;nonblock=1;usleep=0"
	gs, err := workergroups.New(workergroups.WithDefaultWorkers(2))
	if err != nil {
		panic(err)
	}
	spec, err := workergroups.ParseSpec("name=abc;workers=4;nonblock=1;usleep=0")
	if err != nil {
		panic(err)
	}
	if _, err := gs.Add(spec); err != nil {
		panic(err)
	}

	g, err := gs.Lookup("abc")
	if err != nil {
		panic(err)
	}
	done := make(chan string)
	switch err := g.Submit(func() { done <- "resumed on " + g.Name() }); {
	case errors.Is(err, workergroups.ErrOverload):
		fmt.Println("503 Service Unavailable")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println(<-done)
	}

	_, err = gs.Lookup("xyz")
	fmt.Println(err)

	undone, err := gs.Stop(context.Background())
	fmt.Println(undone, err, g.Stats().Completed)
	// Output:
	// resumed on abc
	// workergroups: unknown group "xyz"
	// 0 <nil> 1
}

func ExampleParseSpec() {
	spec, err := workergroups.ParseSpec("name=tkv;workers=1;nonblock=0;usleep=500")
	fmt.Println(spec.Name, spec.Workers, spec.Nonblock, spec.Usleep, err)

	_, err = workergroups.ParseSpec("name=abc;workers=four")
	fmt.Println(err)
	// Output:
	// tkv 1 false 500µs <nil>
	// workergroups: bad group spec "name=abc;workers=four": workers="four": not a number
}
