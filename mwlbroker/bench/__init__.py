"""``mwlbroker bench``: intake and worklist figures measured on the machine it runs on."""
