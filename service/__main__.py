"""`python -m service`: the same as the `trailwarden` command."""

from service.cli import main

main()
