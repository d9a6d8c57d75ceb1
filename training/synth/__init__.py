"""Seeded synthetic datasets in graphrec's format: an Alipay-like fund and coupon scenario that scales to 10^7 users."""
