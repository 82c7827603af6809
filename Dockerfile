# Build: docker build -t rwagent .
# Run:   docker run -v $PWD/rwagent.yaml:/etc/rwagent/rwagent.yaml -p 12345:12345 rwagent
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# GOTAGS=all_sd builds in every service discovery Prometheus has (README).
ARG GOTAGS=
RUN CGO_ENABLED=0 go build -trimpath -tags "${GOTAGS}" -ldflags "-s -w -X main.version=${VERSION}" -o /out/rwagent ./cmd/rwagent \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ampemu ./cmd/ampemu

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rwagent /usr/local/bin/rwagent
COPY --from=build /out/ampemu /usr/local/bin/ampemu
COPY agent.example.yaml /etc/rwagent/rwagent.yaml
# The WAL lives here: mount a volume so unsent samples survive a restart.
VOLUME /var/lib/rwagent
EXPOSE 12345
USER nonroot
ENTRYPOINT ["/usr/local/bin/rwagent"]
CMD ["--config.file=/etc/rwagent/rwagent.yaml", "--storage.path=/var/lib/rwagent", "--web.listen-address=0.0.0.0:12345"]
