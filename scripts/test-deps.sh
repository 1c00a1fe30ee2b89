#!/usr/bin/env bash
# Installs and starts what the tests talk to: SIPp, RabbitMQ and NATS with JetStream.
# Idempotent; safe to run on a machine that already has everything.
set -euo pipefail

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v rabbitmq-server >/dev/null 2>&1 || need+=(rabbitmq-server)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq "${need[@]}" </dev/null >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name
  for _ in $(seq 1 "$2"); do port_open "$1" && return 0; sleep 1; done
  echo "test-deps: $3 did not open 127.0.0.1:$1" >&2; return 1
}

if ! port_open 5672; then
  echo "test-deps: starting rabbitmq-server"
  rabbitmq-server -detached </dev/null >/dev/null 2>&1 || true
  wait_port 5672 90 rabbitmq
fi
if ! port_open 4222; then
  echo "test-deps: starting nats-server with JetStream"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log </dev/null
  wait_port 4222 30 nats
fi
echo "test-deps: sipp $(command -v sipp), rabbitmq :5672, nats :4222 ready"
