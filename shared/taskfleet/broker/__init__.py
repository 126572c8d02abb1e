"""RabbitMQ: the connection, the topology, the outbox relay and the publisher."""
