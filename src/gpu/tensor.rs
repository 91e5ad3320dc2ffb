//! Device tensors and binding windows.
//!
//! A [`GpuTensor`] is a view of `len` elements (f32, or f16 where a kernel reads `array<f16>`)
//! starting `offset` elements into a shared wgpu buffer, so one large allocation (an arena of parameters, say) can hold many tensors. Kernels
//! never bind a whole buffer: they bind a [`Window`], the aligned byte range covering just the
//! elements a dispatch touches, and tell the shader where its data starts inside that window.
//! This is what lets an operand larger than the adapter's max storage binding be processed in
//! chunks, and a view start at any element even though binding offsets must be 256-byte aligned.

use crate::error::{Error, Result};
use std::sync::Arc;

/// Element type of a tensor's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    /// IEEE half precision (`array<f16>` in WGSL, needs SHADER_F16): operands of the
    /// cooperative-matrix kernels.
    F16,
}

impl DType {
    pub fn bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GpuTensor {
    buffer: Arc<wgpu::Buffer>,
    offset: usize, // elements from the start of the buffer
    len: usize,    // elements
    dtype: DType,
}

impl GpuTensor {
    /// An f32 view.
    pub fn new(buffer: Arc<wgpu::Buffer>, offset: usize, len: usize) -> Self {
        Self::typed(buffer, offset, len, DType::F32)
    }

    pub fn typed(buffer: Arc<wgpu::Buffer>, offset: usize, len: usize, dtype: DType) -> Self {
        assert!((offset + len) as u64 * dtype.bytes() <= buffer.size(), "tensor view runs past its buffer");
        Self { buffer, offset, len, dtype }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Element offset of this view inside its buffer.
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn byte_offset(&self) -> u64 {
        self.offset as u64 * self.dtype.bytes()
    }

    /// Bytes the view's elements occupy.
    pub fn byte_len(&self) -> u64 {
        self.len as u64 * self.dtype.bytes()
    }

    /// A sub-view of `len` elements starting `start` elements into this one.
    pub fn view(&self, start: usize, len: usize) -> GpuTensor {
        assert!(start + len <= self.len, "view {start}+{len} out of range for a tensor of {}", self.len);
        GpuTensor { buffer: self.buffer.clone(), offset: self.offset + start, len, dtype: self.dtype }
    }

    /// A view of the same buffer with another element type, `offset` and `len` in that type's
    /// elements from the buffer's start (to read f16 data as the f32 words that hold it).
    pub(crate) fn reinterpret(&self, offset: usize, len: usize, dtype: DType) -> GpuTensor {
        GpuTensor::typed(self.buffer.clone(), offset, len, dtype)
    }

    /// The window that covers elements `[lo, hi)` of this view. `align` is the adapter's
    /// `min_storage_buffer_offset_alignment`; the window starts on it and its size is a multiple of
    /// 16 bytes so it can be read as `array<vec4<f32>>`. Fails if it exceeds `max_bytes`.
    pub fn window(&self, lo: usize, hi: usize, align: u64, max_bytes: u64) -> Result<Window<'_>> {
        assert!(lo < hi && hi <= self.len, "window [{lo}, {hi}) outside a tensor of {}", self.len);
        let eb = self.dtype.bytes();
        let first = (self.offset + lo) as u64 * eb;
        let end = (self.offset + hi) as u64 * eb;
        let start = first / align * align;
        // The buffer size is a multiple of 256, so rounding the end up to 16 stays inside it.
        let size = (end - start).div_ceil(16) * 16;
        let size = size.min(self.buffer.size() - start);
        if size > max_bytes {
            return Err(Error::Shape {
                op: "bind",
                message: format!("a {size}-byte binding exceeds the {max_bytes}-byte limit (caller must chunk)"),
            });
        }
        Ok(Window {
            buffer: &self.buffer,
            byte_offset: start,
            byte_size: size,
            elem_offset: ((first - start) / eb) as u32,
        })
    }
}

/// A bindable byte range of a buffer, and where the wanted data starts inside it.
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub byte_offset: u64,
    pub byte_size: u64,
    /// Elements (of the tensor's dtype) between the window start and the first element the
    /// dispatch wants.
    pub elem_offset: u32,
}

/// Bytes a window for `elems` contiguous elements can need beyond the elements themselves: up to
/// `align` before them (alignment of the start) and 16 after (vec4 rounding of the end).
pub fn window_slack(align: u64) -> u64 {
    align + 16
}
