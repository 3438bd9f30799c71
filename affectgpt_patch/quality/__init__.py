"""How good an agent and its features are: evaluation, FACS test cases, and the inspection page."""
