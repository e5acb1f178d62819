// Package httpjson writes pgcast's JSON answers: the content type every
// response has, and the error shape of the endpoints outside the REST API
// (ticket, WebSocket handshakes). It is internal to server: the REST API's
// own error type (with details) is rest.Error.
package httpjson
