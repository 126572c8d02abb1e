"""The one message path: the consumer that claims, runs, commits and settles; what handlers get."""
