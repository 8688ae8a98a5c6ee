"""The reward-hack corpus: attacks an agent can try on a verifier, as data, and the audit that
runs them (`agentrm audit hacks`)."""
