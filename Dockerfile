# Build: docker build -t rwagent .
# Run:   docker run -v $PWD/rwagent.yaml:/etc/rwagent/rwagent.yaml:ro \
#          -v rwagent-wal:/var/lib/rwagent -p 127.0.0.1:12345:12345 rwagent
#
# Two stages. The runtime stage copies from the build stage only what is
# under /out, so test/container can build that same stage from files made
# on the host (the classic builder cannot skip the golang stage, and CI has
# no registry to pull it from).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY replaced/ replaced/
RUN go mod download
COPY . .
ARG VERSION=dev
# GOTAGS=all_sd builds in every service discovery Prometheus has (README);
# grpcnotrace is always set, as in the Makefile (it says why).
ARG GOTAGS=
RUN CGO_ENABLED=0 go build -trimpath -tags "grpcnotrace,${GOTAGS}" -ldflags "-s -w -X main.version=${VERSION}" -o /out/rwagent ./cmd/rwagent \
 && cp /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt \
 && mkdir /out/wal

# The image: the static binary, CA certificates for HTTPS to AMP, a
# nonroot user, and the WAL directory owned by it. Nothing else (no
# shell, no ampemu).
FROM scratch AS runtime
COPY --from=build /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY packaging/container/passwd packaging/container/group /etc/
COPY --from=build --chown=65532:65532 /out/wal/ /var/lib/rwagent/
COPY --from=build /out/rwagent /usr/local/bin/rwagent
USER 65532:65532
# The WAL and send positions: mount a volume so unsent samples survive a
# restart. A new named volume takes the directory's owner, 65532.
VOLUME /var/lib/rwagent
# /metrics, /-/healthy, /-/ready and /debug/pprof/ share this port.
EXPOSE 12345
ENTRYPOINT ["/usr/local/bin/rwagent"]
# 0.0.0.0 because the container's network namespace is the boundary;
# publish the port only where it should be reachable.
CMD ["--config.file=/etc/rwagent/rwagent.yaml", "--storage.path=/var/lib/rwagent", "--web.listen-address=0.0.0.0:12345"]
