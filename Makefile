# make test: everything CI runs. make bench: the Go benchmarks.
GO ?= go
PKGS ?= ./...

.PHONY: test deps vet unit bench fmt

test: deps vet unit

deps:
	bash scripts/test-deps.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 14m $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')
