# Multi-stage build of pgcast. Not exercised by CI (no Docker engine there);
# kept simple enough to be checked by reading.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=docker
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/pgcast ./cmd/pgcast

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pgcast /usr/local/bin/pgcast
EXPOSE 8080 9090
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/pgcast"]
CMD ["serve"]
