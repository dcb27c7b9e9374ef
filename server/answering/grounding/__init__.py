"""Grounding check: is every claim of an answer supported by the retrieved sources?

The check is independent of whichever backend wrote the answer (extractive or a remote model):

1. Split the answer into claims (sentences, list items, table rows; a fenced code block is one
   claim). Inline citation markers ``[n]`` stay with their sentence and point at ``evidence[n-1]``.
2. Score each claim against the evidence it cites: lexical overlap of content words plus embedding
   similarity to the best sentence window of the source. Numbers and code identifiers in a claim
   must appear in the supporting text, otherwise the claim's support is capped low: a fabricated
   setting name or port number is the failure that matters most in documentation answers.
3. Weight claim scores by claim length into one answer score.
4. Gate on question–evidence relevance. An extractive answer copies source sentences, so its claims
   always look supported; only relevance tells that the sources never addressed the question.

The answer is withheld (``abstain``) when either the score or the relevance is below its threshold.
Every weight is a named setting so an evaluation run can tune them.

evidence.py   `Evidence`: one retrieved chunk as answering and grounding see it
claims.py     splitting an answer into claims, and the citation markers each carries (step 1)
terms.py      content terms, identifiers and numbers, compared as BM25 compares them
support.py    how well the sources support one claim (step 2)
relevance.py  whether the sources address the question at all (step 4)
verdict.py    `check`: the answer score, the relevance gate and the decision to abstain (steps 3–4)
"""
