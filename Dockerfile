# The Falconet engine image (used by docker-compose.yml and deploy/kubernetes).
#   docker build -t falconet:0.1.0 .
# Debian bookworm: bcc comes from the distribution (python3-bpfcc; the PyPI "bcc" is unrelated), so
# the virtualenv is created with --system-site-packages to see it. Kernel headers are NOT in the
# image: they must match the host kernel, so /lib/modules and /usr/src are mounted from the host.
# Every plugin of plugins/ is installed except the example plugin (its demo rules and hooks do not
# belong in a production image).
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-pip python3-bpfcc bpfcc-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/falconet/src
# dependencies first (better layer caching), then the sources
COPY pyproject.toml README.md ./
COPY core ./core
COPY plugins ./plugins
# the wheel carries the BPF source and default rules as data (<venv>/share/falconet)
COPY bpf ./bpf
COPY rules ./rules
RUN python3 -m venv --system-site-packages /opt/falconet/venv \
 && /opt/falconet/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/falconet/venv/bin/pip install --no-cache-dir . \
 && for p in plugins/*/; do \
      case "$p" in *-example/) continue ;; esac; \
      [ -f "$p/pyproject.toml" ] && /opt/falconet/venv/bin/pip install --no-cache-dir "$p"; \
    done \
 && /opt/falconet/venv/bin/pip install --no-cache-dir "./plugins/falconet-container[k8s]" \
 && /opt/falconet/venv/bin/python -c "from falconet.collector.program import bpf_source_path; print(bpf_source_path())" \
 && /usr/bin/python3 -c "import bcc"

COPY rules/ /etc/falconet/rules/
# the escalation relay (OTLP/JSON -> Alertmanager) runs from this image in the compose stack
COPY otel-collector/alert_relay.py /opt/falconet/alert_relay.py

ENV PATH=/opt/falconet/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
EXPOSE 8765
ENTRYPOINT ["/opt/falconet/venv/bin/falconet"]
CMD ["run"]
