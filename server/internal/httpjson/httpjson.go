package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write writes v with the JSON content type every pgcast response has.
// An error is the connection's (the client is gone, or too slow): there is
// nothing left to answer.
func Write(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	return json.NewEncoder(w).Encode(v)
}

// errorBody is the JSON error shape of the ticket endpoint and the
// WebSocket handshakes.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error writes {"error":{"code":errCode,"message":message}} with status
// code. message is shown to clients: never put a token or ticket in it.
func Error(w http.ResponseWriter, code int, errCode, message string) {
	_ = Write(w, code, errorBody{Error: errorDetail{Code: errCode, Message: message}})
}
