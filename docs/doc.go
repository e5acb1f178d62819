// Package docs holds pgcast's user-facing contracts, kept next to the code
// they describe: catalyst.md (the Catalyst event streams and their tickets),
// realtime.md (/api/realtime, the collections REST API and publishing),
// design.md (how changes are captured, read, and written to sockets) and
// asyncapi.yaml, the AsyncAPI 3 document of both WebSocket APIs. Its tests
// parse the AsyncAPI document and fail when the server defines a message
// type, error code, close code or event name that the documents do not
// describe (`make lint-docs` also validates it with the official AsyncAPI
// parser).
package docs

import _ "embed"

// AsyncAPI is asyncapi.yaml: the AsyncAPI 3 document of the Catalyst event
// streams and of /api/realtime.
//
//go:embed asyncapi.yaml
var AsyncAPI []byte
