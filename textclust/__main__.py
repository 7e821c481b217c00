"""``python -m textclust`` runs the command line."""

from .cli import main

main()
