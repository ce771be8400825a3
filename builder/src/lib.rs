//! Bakes node images from recipes (issue 5). Empty until then: the crate exists so the workspace has its final shape.
