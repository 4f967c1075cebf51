//! The products' own error codes, by product: [`neuron`](crate::neuron::codes),
//! [`ekuiper`](crate::ekuiper::codes), [`nanomq`](crate::nanomq::codes). An
//! [`Error::Api`](crate::Error::Api) names the product whose table its code is from, so the same
//! number means what that product means by it (eKuiper's 1002 is "not found", Neuron's is "bad
//! body").

use crate::service::EdgeKind;

/// Whether `product`'s error `code` says that what was asked for does not exist.
pub fn is_not_found(product: EdgeKind, code: i64) -> bool {
    match product {
        EdgeKind::Neuron | EdgeKind::NeuronEx => crate::neuron::codes::is_not_found(code),
        EdgeKind::Ekuiper => crate::ekuiper::codes::is_not_found(code),
        _ => false,
    }
}
