//! Kernel parameter structs (`var<immediate> p: XParams` in WGSL) and the layout each one
//! reports, so that the Rust and WGSL declarations can be compared instead of trusted.
//!
//! Every parameter struct is declared through [`immediates!`], which adds `#[repr(C)]`, the
//! bytemuck derives and an [`Immediates`] impl whose [`Immediates::LAYOUT`] lists each field's
//! name, byte offset and scalar type as the compiler laid it out. The kernel table
//! (`gpu::pipelines`) names each shader's struct by type, [`GpuContext::dispatch`] refuses any
//! other type, and `tests/shaders.rs` compares every table entry with what naga reflects from the
//! shader. A new struct therefore cannot reach a dispatch without being checked.
//!
//! [`GpuContext::dispatch`]: crate::gpu::GpuContext::dispatch

/// A parameter struct's layout as Rust laid it out.
#[derive(Clone, Copy, Debug)]
pub struct ParamsLayout {
    /// The type's name, which must also be the WGSL struct's name.
    pub name: &'static str,
    /// `size_of` the struct, in bytes.
    pub size: usize,
    pub fields: &'static [ParamsField],
}

/// One field of a [`ParamsLayout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamsField {
    pub name: &'static str,
    /// `offset_of` the field, in bytes.
    pub offset: usize,
    pub scalar: ParamScalar,
    /// 1 for a scalar; N for `[T; N]`, which stands for N consecutive WGSL members.
    pub count: usize,
}

/// The 4-byte scalar types immediates may hold (WGSL forbids f16 in immediates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamScalar {
    U32,
    I32,
    F32,
}

/// A type a parameter field may have: a 4-byte scalar or an array of them.
pub trait ParamField {
    const SCALAR: ParamScalar;
    const COUNT: usize;
}

impl ParamField for u32 {
    const SCALAR: ParamScalar = ParamScalar::U32;
    const COUNT: usize = 1;
}

impl ParamField for i32 {
    const SCALAR: ParamScalar = ParamScalar::I32;
    const COUNT: usize = 1;
}

impl ParamField for f32 {
    const SCALAR: ParamScalar = ParamScalar::F32;
    const COUNT: usize = 1;
}

impl<T: ParamField, const N: usize> ParamField for [T; N] {
    const SCALAR: ParamScalar = T::SCALAR;
    const COUNT: usize = N * T::COUNT;
}

/// A kernel parameter struct: plain data whose layout is known. Implement it with [`immediates!`]
/// only, so that the layout is derived from the declaration itself.
pub trait Immediates: bytemuck::Pod {
    const LAYOUT: ParamsLayout;
}

/// Declare a kernel parameter struct: the struct (`#[repr(C)]`, `Clone`, `Copy`, `Pod`,
/// `Zeroable`, plus any derives given) and its [`Immediates`] impl.
///
/// ```ignore
/// immediates! {
///     /// Matches `RopeParams` in the shader.
///     #[derive(Default)]
///     pub(crate) struct RopeParams { n: u32, off: [u32; 3], scale: f32 }
/// }
/// ```
macro_rules! immediates {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($fvis $field: $ty),*
        }

        impl $crate::gpu::immediates::Immediates for $name {
            const LAYOUT: $crate::gpu::immediates::ParamsLayout = $crate::gpu::immediates::ParamsLayout {
                name: stringify!($name),
                size: ::std::mem::size_of::<$name>(),
                fields: &[$($crate::gpu::immediates::ParamsField {
                    name: stringify!($field),
                    offset: ::std::mem::offset_of!($name, $field),
                    scalar: <$ty as $crate::gpu::immediates::ParamField>::SCALAR,
                    count: <$ty as $crate::gpu::immediates::ParamField>::COUNT,
                }),*],
            };
        }
    };
}

pub(crate) use immediates;

/// The largest of `layouts`' sizes: the immediate bytes a device must offer.
pub const fn max_size(layouts: &[ParamsLayout]) -> usize {
    let mut max = 0;
    let mut i = 0;
    while i < layouts.len() {
        if layouts[i].size > max {
            max = layouts[i].size;
        }
        i += 1;
    }
    max
}
