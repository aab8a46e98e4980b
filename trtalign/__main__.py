from trtalign.cli import entry

entry()
