//! CSV batch import of edge services (being written).
