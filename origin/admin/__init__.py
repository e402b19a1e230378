"""What the admin API does: rights checked, changes made, every one of them audited."""
