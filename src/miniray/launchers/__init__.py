"""Launchers: start a miniray cluster through a batch system.

Only Slurm for now (``miniray.launchers.slurm``): ``miniray slurm script|submit|up ... -- COMMAND``
renders a commented sbatch script from ``templates/slurm.sh.tmpl``, submits it, and follows the job.
The node-side helpers the script calls live in ``miniray.launchers.jobtools``.
"""
