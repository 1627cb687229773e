#!/bin/bash
# What only a GPU shows, in one command (docs/BENCHMARKS.md, "On a GPU"):
# training img/s of the paper's network (fp32, AMP; ours against torchvision),
# inference ms/image over input sizes and depths (Figure 2's axes), NCHW
# against channels_last for inference and training, and one short trial of
# the paper profile end to end on synthetic 600-px scenes (no downloads:
# random init, BN trained). Writes nothing but to stdout and $OUT_DIR
# (default ./outputs/gpu).
#
#     bash benchmarks/gpu_figures.sh 2>&1 | tee gpu.log
set -x
out=${OUT_DIR:-outputs/gpu}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
paper="profile=paper model.pretrained=null model.frozen_bn=false"
# 1. training (batch 8, 600 px) and inference with post-processing, ours vs torchvision
python3 benchmarks/detector_speed.py --preset paper --device cuda --iters 10 --rounds 5 --images 20 --sizes 400 600 800
python3 benchmarks/detector_speed.py --preset paper --device cuda --amp --iters 10 --rounds 5 --images 20 --sizes 400 500 600 700 800
python3 benchmarks/detector_speed.py --preset paper --depth 101 --device cuda --amp --inference-only --images 20 --sizes 400 500 600 700 800
# 2. the network alone, NCHW against channels_last, fp32 and AMP
python3 benchmarks/memory_format.py $paper --depths 50 101 --sizes 400 500 600 700 800 --device cuda --passes 20
python3 benchmarks/memory_format.py $paper --depths 50 101 --sizes 400 500 600 700 800 --device cuda --passes 20 --amp
# 3. training steps of the paper profile (batch 16, 600 px), NCHW against channels_last, AMP on and off
scenes="data.synthetic.image_size=600 data.num_train_images=64 data.num_val_images=16"
python3 benchmarks/train_memory_format.py $paper $scenes train.amp=true --steps 20 --device cuda
python3 benchmarks/train_memory_format.py $paper $scenes train.amp=false --steps 20 --device cuda
# 4. one short trial of the paper profile end to end (data, AMP training, COCOeval, timed inference)
python3 -m sweeps.train $paper data.synthetic.image_size=600 data.num_train_images=256 data.num_val_images=64 \
    train.iterations=300 train.steps=[250] train.warmup_iters=50 eval.timing_images=50 output_dir=$out
cat "$out"/train/*/*/metrics.json
# 5. issue 25: the trial's loop against the bare step, same model, same run (goal: loop / step >= 0.9)
python3 benchmarks/loop_speed.py $paper $scenes data.num_train_images=256 train.amp=true train.channels_last=true \
    data.num_workers=8 --device cuda --steps 20 --rounds 3
python3 benchmarks/loop_speed.py --steps 20 --rounds 3   # the cpu profile on this machine's CPU: must not get slower
# 6. issue 25: small trials packed on one GPU, k at a time (the cpu profile's main command, 10 trials each;
#    the first run also makes the synthetic pretraining once): trials per hour against k
for k in 1 4 8; do
    start=$(date +%s)
    python3 -m sweeps.run +sweep=gamma_alpha cluster.num_cpus=16 cluster.cpus_per_trial=$((16 / k)) \
        cluster.gpus_per_trial=$(python3 -c "print(1 / $k)") tracking.uri=sqlite:///$PWD/$out/pack$k.db \
        output_dir=$out/pack$k reports_dir=$out/pack$k/reports | tail -n 25
    echo "k=$k: 10 trials in $(( $(date +%s) - start )) s"
done
# 7. issue 25: Figure 2's axes on the GPU at a stated batch (eval.timing_batch; batch 1 is launch-bound there):
#    the speed_accuracy grid, one seed, a short schedule (the timing, not the AP, is what this step is for)
python3 -m sweeps.run +sweep=speed_accuracy sweep.seeds=1 train.iterations=60 train.steps=[50] train.warmup_iters=10 \
    eval.timing_batch=16 eval.timing_images=64 cluster.num_cpus=16 cluster.cpus_per_trial=4 cluster.gpus_per_trial=0.25 \
    tracking.uri=sqlite:///$PWD/$out/fig2.db output_dir=$out/fig2 reports_dir=$out/fig2/reports | tail -n 30
