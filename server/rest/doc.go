// Package rest serves the collections REST API: records of a collection
// (/api/{collection}[/{id}]), collections (/api/collections), published
// events (/api/events) and watches (/api/watches), each answer JSON and
// each error the REST error body (an httpjson.APIError that always lists
// details, NewError). Who may read or write a record is package stream's
// decision (stream.Viewer: Access, MayRead, OwnerFilter), per collection
// rule, as for the events the hub and replays deliver; records are read
// and written through package db and built with stream.AppendRecord, as
// realtime builds a record event's, so both show one record byte for byte
// alike. The server registers the routes (Register) and counts the API's
// timeouts and truncated pages.
package rest
