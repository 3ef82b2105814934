"""Coordinated abuse: posts linked by near-duplicate text and shared artifacts, campaigns over them, and
point-in-time graph features that carry confirmed violations along those links.

- `links`: which posts are linked, and by what (near-duplicate texts, normalised links, phone numbers
  and e-mail addresses), from ml.matching.
- `features`: for each post, what its links showed before it was created (earlier posts, accounts and
  confirmed removals reached through them): one hop of label propagation, point in time.
- `clusters`: campaigns for analysts: connected components of linked posts within a window, across
  accounts, with size, accounts, first and last seen, burst rate, dominant policy and share actioned.
"""
