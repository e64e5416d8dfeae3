//! Floats ordered by `total_cmp` (−0 before +0, NaNs at the ends), for map keys and heaps.

use std::cmp::Ordering;

/// A float ordered, and compared for equality, by `total_cmp`.
#[derive(Clone, Copy, Debug)]
pub struct Total<T>(pub T);

macro_rules! total_order {
    ($float:ty) => {
        impl PartialEq for Total<$float> {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == Ordering::Equal
            }
        }

        impl Eq for Total<$float> {}

        impl PartialOrd for Total<$float> {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for Total<$float> {
            fn cmp(&self, other: &Self) -> Ordering {
                self.0.total_cmp(&other.0)
            }
        }
    };
}

total_order!(f32);
total_order!(f64);

#[cfg(test)]
mod tests {
    use super::Total;

    #[test]
    fn orders_like_total_cmp() {
        assert!(Total(-0.0f32) < Total(0.0f32));
        assert!(Total(-1.0f64) < Total(-0.0f64));
        assert_eq!(Total(2.5f32), Total(2.5f32));
        assert!(Total(f64::INFINITY) < Total(f64::NAN));
    }
}
