"""Safety probe data: harmful requests (:mod:`.sources`), jailbreak wrappers (:mod:`.jailbreaks`) and
prompt-injection cases (:mod:`.injection`), each with a stable train/test split so hardening can
train on one part and the audit measure on the other. Plain data; no model is touched here."""
