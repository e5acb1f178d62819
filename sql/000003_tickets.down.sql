DROP TABLE IF EXISTS pgcast.tickets;
