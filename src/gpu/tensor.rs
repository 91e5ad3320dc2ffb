//! Device tensors and binding windows.
//!
//! A [`GpuTensor`] is a view of `len` f32 elements starting `offset` elements into a shared wgpu
//! buffer, so one large allocation (an arena of parameters, say) can hold many tensors. Kernels
//! never bind a whole buffer: they bind a [`Window`], the aligned byte range covering just the
//! elements a dispatch touches, and tell the shader where its data starts inside that window.
//! This is what lets an operand larger than the adapter's max storage binding be processed in
//! chunks, and a view start at any element even though binding offsets must be 256-byte aligned.

use crate::error::{Error, Result};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct GpuTensor {
    buffer: Arc<wgpu::Buffer>,
    offset: usize, // elements from the start of the buffer
    len: usize,    // elements
}

impl GpuTensor {
    pub fn new(buffer: Arc<wgpu::Buffer>, offset: usize, len: usize) -> Self {
        assert!((offset + len) as u64 * 4 <= buffer.size(), "tensor view runs past its buffer");
        Self { buffer, offset, len }
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
        self.offset as u64 * 4
    }

    /// A sub-view of `len` elements starting `start` elements into this one.
    pub fn view(&self, start: usize, len: usize) -> GpuTensor {
        assert!(start + len <= self.len, "view {start}+{len} out of range for a tensor of {}", self.len);
        GpuTensor { buffer: self.buffer.clone(), offset: self.offset + start, len }
    }

    /// The window that covers elements `[lo, hi)` of this view. `align` is the adapter's
    /// `min_storage_buffer_offset_alignment`; the window starts on it and its size is a multiple of
    /// 16 bytes so it can be read as `array<vec4<f32>>`. Fails if it exceeds `max_bytes`.
    pub fn window(&self, lo: usize, hi: usize, align: u64, max_bytes: u64) -> Result<Window<'_>> {
        assert!(lo < hi && hi <= self.len, "window [{lo}, {hi}) outside a tensor of {}", self.len);
        let first = (self.offset + lo) as u64 * 4;
        let end = (self.offset + hi) as u64 * 4;
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
            elem_offset: ((first - start) / 4) as u32,
        })
    }
}

/// A bindable byte range of a buffer, and where the wanted data starts inside it.
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub byte_offset: u64,
    pub byte_size: u64,
    /// Elements between the window start and the first element the dispatch wants.
    pub elem_offset: u32,
}

/// Bytes a window for `elems` contiguous elements can need beyond the elements themselves: up to
/// `align` before them (alignment of the start) and 16 after (vec4 rounding of the end).
pub fn window_slack(align: u64) -> u64 {
    align + 16
}
