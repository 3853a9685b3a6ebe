//! The edge worker (see issue 4).
