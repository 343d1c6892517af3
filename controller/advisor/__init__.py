"""The optional AI advisor (docs/advisor.md): a second opinion from a language model, every
suggestion checked by the same step checker as our own plans before anyone sees it as valid.

One job per module: `settings` (the `ai:` config block), `summary` (what the model sees),
`answer` (the JSON the model must answer and how it is read back), `providers` (OpenAI,
Anthropic and Ollama through their SDKs), `validation` (suggestions -> AI plan + rejections),
`advice` (the shell: observe, ask, check) and `report` (table and JSON), `metrics`.
"""
