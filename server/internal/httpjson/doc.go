// Package httpjson writes pgcast's JSON answers: the content type every
// response has, and the one error shape of every endpoint (APIError): the
// REST API's, with details, and the ticket endpoint's and the WebSocket
// handshakes', without. It is internal to server.
package httpjson
