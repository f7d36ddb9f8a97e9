# syntax=docker/dockerfile:1

# Build the one rolodex binary: static, no cgo, so it runs on distroless.
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /rolodex ./cmd/rolodex

# Runtime: distroless static, no shell, runs as uid 65532 (nonroot).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /rolodex /rolodex
USER nonroot:nonroot
# ingest HTTP, query API, processors metrics, sink metrics
EXPOSE 8080 8081 9100 9101
ENTRYPOINT ["/rolodex"]
