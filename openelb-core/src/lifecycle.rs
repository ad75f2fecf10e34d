//! Service lifecycle rules: which Services are ours, what they request, when an address is released.
