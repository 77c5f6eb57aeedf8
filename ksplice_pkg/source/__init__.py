"""Stage 1, the source: the patch (file, --diffext, --git), the post tree it makes from a hard-link
copy of the pristine tree, and the #line directives that keep unchanged code's line numbers."""
