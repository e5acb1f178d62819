// Package rest serves the collections REST API: records of a collection
// (/api/{collection}[/{id}]), collections (/api/collections), published
// events (/api/events) and watches (/api/watches), each answer JSON and
// each error the REST error body (Error). Who may read or write a record is
// decided per collection rule; the server registers the routes (Register)
// and counts the API's timeouts and truncated pages.
package rest
