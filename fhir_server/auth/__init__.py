"""Who is calling and what they may do: JWT bearer tokens, SMART/eHealth scopes, ownership."""
