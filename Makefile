# make test: everything CI runs. make bench: the Go benchmarks. make fuzz:
# every fuzz target for FUZZTIME each (one at a time: go test -fuzz takes one;
# FUZZFLAGS=-parallel=1 keeps each on one core).
GO ?= go
PKGS ?= ./...

.PHONY: test deps vet unit bench fmt fuzz

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

FUZZTIME ?= 5m
FUZZFLAGS ?=
FUZZ_TARGETS ?= sipproxy:FuzzParseListen sipproxy:FuzzParseTarget sipproxy:FuzzValidateRequest \
	sipproxy:FuzzRegistrarSave sipproxy:FuzzRawReply sipproxy:FuzzParseQ sipproxy:FuzzShedDatagram \
	rawsip:FuzzTag rawsip:FuzzScanAgreesWithSipgo transaction:FuzzParseToken \
	workergroups:FuzzParseSpec eventbus/evi:FuzzEncode eventbus/evi:FuzzDecode eventbus/evi:FuzzParseSocket \
	eventbus/evi:FuzzParseEventFlag eventbus/rabbitmq:FuzzParseAddress eventbus/rabbitmq:FuzzEncodeJSON \
	internal/config:FuzzParseFile internal/config:FuzzRedact sipauth:FuzzParseFile sipauth:FuzzCheck

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; echo "== ./$$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./$$pkg; \
	done
