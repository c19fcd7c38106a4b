"""Typed builders of resource specs: small pure functions that return the SDKs' input TypedDicts.

They import the SDKs for their types only and declare no resource; the components in
`components/` call them, so a constructor reads as the list of its resources.
"""
