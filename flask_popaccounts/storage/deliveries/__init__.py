"""The built-in deliveries behind the ``delivery`` hook (:mod:`flask_popaccounts.hooks`).

- :mod:`.sql`: the built-in SQL store (the default): the scanner's verdicts for it.
- :mod:`.maildir`: Maildir++ on disk (Dovecot, Courier): a deterministic file name per
  account and UIDL, so a repeat is a no-op.
- :mod:`.lmtp`: LMTP into the host's mail server, with an IMAP read-back.
- :mod:`.records`: the table of open intents and rejected messages.
"""
