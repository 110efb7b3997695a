"""What a request costs: the estimate before it is sent, the limits it must fit, and the charge fal reports after.

`units` reads fal's unit words and the quantity an input implies (pure); `estimates` prices a call from the catalog's
cached price, or fal's own estimate where the input cannot tell the quantity; `limits` holds the caps, the daily
budget and the confirmation threshold, checked before anything is sent; `charges` fetches what fal really charged,
with an admin key, lazily. Part of `jobs`: may import `fal`, `settings`, `logs` and the rest of `jobs`.
"""
